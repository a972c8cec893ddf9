;; Determinism probe: adds 0.0 to a quiet NaN carrying a payload and writes the
;; result's 8 bytes to out.bin. With NaN canonicalisation the payload is gone
;; (0x7ff8000000000000) on every CPU; without it, x86 keeps it.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "out.bin")
  ;; little-endian 0x7ff8000000000001, read from memory so nothing is folded at compile time
  (data (i32.const 128) "\01\00\00\00\00\00\f8\7f")
  (func (export "_start")
    (f64.store (i32.const 256) (f64.add (f64.load (i32.const 128)) (f64.const 0)))
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 7)
            (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8)))
    (i32.store (i32.const 16) (i32.const 256))
    (i32.store (i32.const 20) (i32.const 8))
    (drop (call $fd_write (i32.load (i32.const 8)) (i32.const 16) (i32.const 1) (i32.const 24)))))
