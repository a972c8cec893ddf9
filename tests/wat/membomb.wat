;; Hostile: grows linear memory one page at a time until refused, then traps
;; (as a C program's abort() after malloc fails would).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
