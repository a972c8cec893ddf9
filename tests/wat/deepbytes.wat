;; Hostile: 40 directories of 250-character names (a 10 KB path, past
;; PATH_MAX), then two 768 KiB files at the bottom: 1.5 MiB that a count by
;; path cannot reach, each file under the per-file size cap. Exits 0; exits
;; 1-3 if the sandbox refuses a step.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 0: the long name; 512: "f1", 516: "f2"; 1024: scratch; 65536: a 64 KiB block
  (memory (export "memory") 2)
  (data (i32.const 0) "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
  (data (i32.const 512) "f1")
  (data (i32.const 516) "f2")

  ;; Writes 12 blocks of 64 KiB (768 KiB) to a new file named at $name (2 bytes).
  (func $fill (param $dir i32) (param $name i32) (local $fd i32) (local $n i32)
    ;; oflags 9 = creat|trunc
    (if (call $path_open (local.get $dir) (i32.const 0) (local.get $name) (i32.const 2)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 1024))
      (then (call $proc_exit (i32.const 3))))
    (local.set $fd (i32.load (i32.const 1024)))
    (i32.store (i32.const 1032) (i32.const 65536))
    (i32.store (i32.const 1036) (i32.const 65536))
    (block $done (loop $more
      (br_if $done (i32.ge_u (local.get $n) (i32.const 12)))
      (drop (call $fd_write (local.get $fd) (i32.const 1032) (i32.const 1) (i32.const 1040)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $more)))
    (drop (call $fd_close (local.get $fd))))

  (func (export "_start") (local $fd i32) (local $i i32)
    (local.set $fd (i32.const 3))
    (block $done (loop $down
      (br_if $done (i32.ge_u (local.get $i) (i32.const 40)))
      (if (call $mkdir (local.get $fd) (i32.const 0) (i32.const 250)) (then (call $proc_exit (i32.const 1))))
      (if (call $path_open (local.get $fd) (i32.const 0) (i32.const 0) (i32.const 250)
            (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 1024))
        (then (call $proc_exit (i32.const 2))))
      (if (i32.ne (local.get $fd) (i32.const 3)) (then (drop (call $fd_close (local.get $fd)))))
      (local.set $fd (i32.load (i32.const 1024)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $down)))
    (call $fill (local.get $fd) (i32.const 512))
    (call $fill (local.get $fd) (i32.const 516))))
