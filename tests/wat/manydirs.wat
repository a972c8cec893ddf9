;; Hostile: makes 20,000 empty directories (named 0000..4e1f in hex) in its
;; working directory, then exits 0: no file bytes at all, but each directory
;; is an inode and a 4 KiB block of the provider's disk.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func $hexdigit (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 10))
      (then (i32.add (local.get $n) (i32.const 48)))
      (else (i32.add (local.get $n) (i32.const 87)))))

  (func (export "_start") (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 20000)))
      (i32.store8 (i32.const 0) (call $hexdigit (i32.and (i32.shr_u (local.get $i) (i32.const 12)) (i32.const 15))))
      (i32.store8 (i32.const 1) (call $hexdigit (i32.and (i32.shr_u (local.get $i) (i32.const 8)) (i32.const 15))))
      (i32.store8 (i32.const 2) (call $hexdigit (i32.and (i32.shr_u (local.get $i) (i32.const 4)) (i32.const 15))))
      (i32.store8 (i32.const 3) (call $hexdigit (i32.and (local.get $i) (i32.const 15))))
      (drop (call $mkdir (i32.const 3) (i32.const 0) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))))
