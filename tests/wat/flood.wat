;; Hostile: creates out.txt and writes 64 KiB blocks to it forever, ignoring errors.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "out.txt")
  (func (export "_start") (local $fd i32)
    ;; oflags 9 = creat|trunc; rights 64 = fd_write
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 7)
            (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 16)))
    (local.set $fd (i32.load (i32.const 16)))
    ;; iovec at 32: 64 KiB starting at 65536 (the second page)
    (i32.store (i32.const 32) (i32.const 65536))
    (i32.store (i32.const 36) (i32.const 65536))
    (loop $forever
      (drop (call $fd_write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
      (br $forever))))
