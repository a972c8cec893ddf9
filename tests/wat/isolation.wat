;; Probe of what the host lets through: copies whatever it can read from stdin
;; (at most 100 bytes) to stdout, then exits with 10 * (fd_read errno) + the
;; number of environment variables it sees. A sealed sandbox gives exit 0 and
;; an empty stdout.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $err i32)
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.const 100))
    (local.set $err (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (local.get $err) (then (i32.store (i32.const 24) (i32.const 0))))
    (i32.store (i32.const 20) (i32.load (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (drop (call $environ_sizes_get (i32.const 32) (i32.const 36)))
    (call $proc_exit (i32.add (i32.mul (local.get $err) (i32.const 10)) (i32.load (i32.const 32))))))
