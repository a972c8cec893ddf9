;; Happy path: `upper IN OUT` reads IN (at most 64 KiB), writes it upper-cased to
;; OUT and prints "upper: done" on stdout. Exits 1 if IN cannot be opened.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 0: scratch words; 1024: argv pointers; 2048: argv strings; 4096: message;
  ;; 65536: the file buffer (one page).
  (memory (export "memory") 2)
  (data (i32.const 4096) "upper: done\n")

  (func $arg (param $i i32) (result i32)
    (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))

  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $end (loop $next
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (local.get $n))

  ;; Opens argv path $p relative to the preopened "." (fd 3); exits 1 on failure.
  (func $open (param $p i32) (param $oflags i32) (param $rights i64) (result i32)
    (if (call $path_open (i32.const 3) (i32.const 0) (local.get $p) (call $strlen (local.get $p))
          (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 8))
      (then (call $proc_exit (i32.const 1))))
    (i32.load (i32.const 8)))

  (func $write (param $fd i32) (param $buf i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $buf))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))))

  (func (export "_start") (local $in i32) (local $out i32) (local $n i32) (local $i i32) (local $c i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.or (i32.lt_u (i32.load (i32.const 0)) (i32.const 3))
                (i32.gt_u (i32.load (i32.const 4)) (i32.const 2048)))
      (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (local.set $in (call $open (call $arg (i32.const 1)) (i32.const 0) (i64.const 2)))
    ;; one read of up to 64 KiB is enough for the tests' inputs
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 65536))
    (drop (call $fd_read (local.get $in) (i32.const 16) (i32.const 1) (i32.const 24)))
    (local.set $n (i32.load (i32.const 24)))
    (block $end (loop $next
      (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $c (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
        (then (i32.store8 (i32.add (i32.const 65536) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    ;; oflags 9 = creat|trunc; rights 64 = fd_write
    (local.set $out (call $open (call $arg (i32.const 2)) (i32.const 9) (i64.const 64)))
    (call $write (local.get $out) (i32.const 65536) (local.get $n))
    (call $write (i32.const 1) (i32.const 4096) (i32.const 12))))
