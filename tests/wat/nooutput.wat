;; Hostile: exits 0 without writing the output it was asked for.
(module
  (memory (export "memory") 1)
  (func (export "_start")))
