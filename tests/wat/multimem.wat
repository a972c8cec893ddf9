;; Hostile: four linear memories, each grown to 256 MiB (4096 pages) and filled,
;; 1 GiB of host memory in all, while the store limit of 256 MiB was meant for
;; the whole guest (it is per memory). Traps if any growth is refused.
(module
  (memory $m0 0)
  (memory $m1 0)
  (memory $m2 0)
  (memory $m3 0)
  (func (export "_start")
    (if (i32.eq (memory.grow $m0 (i32.const 4096)) (i32.const -1)) (then unreachable))
    (memory.fill $m0 (i32.const 0) (i32.const 1) (i32.const 0x10000000))
    (if (i32.eq (memory.grow $m1 (i32.const 4096)) (i32.const -1)) (then unreachable))
    (memory.fill $m1 (i32.const 0) (i32.const 1) (i32.const 0x10000000))
    (if (i32.eq (memory.grow $m2 (i32.const 4096)) (i32.const -1)) (then unreachable))
    (memory.fill $m2 (i32.const 0) (i32.const 1) (i32.const 0x10000000))
    (if (i32.eq (memory.grow $m3 (i32.const 4096)) (i32.const -1)) (then unreachable))
    (memory.fill $m3 (i32.const 0) (i32.const 1) (i32.const 0x10000000))))
