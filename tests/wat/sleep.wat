;; `sleep MS TEXT`: sleeps MS milliseconds (WASI poll_oneoff on the monotonic
;; clock), then writes TEXT to out.txt. Lets tests finish subtasks out of order.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 4096) "out.txt")

  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $end (loop $next
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $n))

  (func $atoi (param $p i32) (result i64) (local $n i64) (local $c i32)
    (block $end (loop $next
      (local.set $c (i32.load8_u (local.get $p)))
      (br_if $end (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57))))
      (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
                             (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $next)))
    (local.get $n))

  (func (export "_start") (local $text i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.or (i32.lt_u (i32.load (i32.const 0)) (i32.const 3))
                (i32.gt_u (i32.load (i32.const 4)) (i32.const 2048)))
      (then (call $proc_exit (i32.const 100))))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    ;; one subscription at 256: userdata 0, tag 0 (clock), monotonic clock (1),
    ;; relative timeout in ns, precision 0, flags 0; the event lands at 512
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (i64.mul (call $atoi (i32.load (i32.const 1028))) (i64.const 1000000)))
    (if (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 101))))
    (local.set $text (i32.load (i32.const 1032)))
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 4096) (i32.const 7)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8))
      (then (call $proc_exit (i32.const 102))))
    (i32.store (i32.const 16) (local.get $text))
    (i32.store (i32.const 20) (call $strlen (local.get $text)))
    (drop (call $fd_write (i32.load (i32.const 8)) (i32.const 16) (i32.const 1) (i32.const 24)))))
