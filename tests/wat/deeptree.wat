;; Hostile: makes a directory tree 3,000 levels deep (d/d/d/...), descending
;; through directory fds, then exits 0. Removing it by recursion
;; (shutil.rmtree on Python < 3.12) raises RecursionError. Exits 1 or 2 if
;; the sandbox refuses a step.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "d")
  (func (export "_start") (local $fd i32) (local $i i32)
    (local.set $fd (i32.const 3))
    (block $done (loop $down
      (br_if $done (i32.ge_u (local.get $i) (i32.const 3000)))
      (if (call $mkdir (local.get $fd) (i32.const 0) (i32.const 1)) (then (call $proc_exit (i32.const 1))))
      ;; oflags 2 = directory
      (if (call $path_open (local.get $fd) (i32.const 0) (i32.const 0) (i32.const 1)
            (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 16))
        (then (call $proc_exit (i32.const 2))))
      (if (i32.ne (local.get $fd) (i32.const 3)) (then (drop (call $fd_close (local.get $fd)))))
      (local.set $fd (i32.load (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $down)))))
