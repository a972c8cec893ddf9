;; Reads the realtime and monotonic clocks (twice each), the realtime clock's
;; resolution and 64 random bytes, and prints all of them raw on stdout
;; (4 x 8 + 8 + 64 = 104 bytes). On a real clock and a real entropy source
;; no two runs print the same.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $check (param $errno i32)
    (if (local.get $errno) (then (call $proc_exit (i32.add (i32.const 10) (local.get $errno))))))
  (func (export "_start")
    (call $check (call $time (i32.const 0) (i64.const 1) (i32.const 0)))
    (call $check (call $time (i32.const 1) (i64.const 1) (i32.const 8)))
    (call $check (call $time (i32.const 0) (i64.const 1) (i32.const 16)))
    (call $check (call $time (i32.const 1) (i64.const 1) (i32.const 24)))
    (call $check (call $res (i32.const 0) (i32.const 32)))
    (call $check (call $random (i32.const 40) (i32.const 64)))
    ;; iovec at 1024: 104 bytes from 0
    (i32.store (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 104))
    (call $check (call $fd_write (i32.const 1) (i32.const 1024) (i32.const 1) (i32.const 1032)))))
