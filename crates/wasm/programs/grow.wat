;; Memory growth against the kernel's limits (issue 20).
;;   huge: asks for 7,000 pages (437 MiB) at once: over the limits, so -1, and nothing taken.
;;   some: grows by 100 pages (6.25 MiB), writes the last byte, returns the new size in pages;
;;         run many times (`--repeat`), memory must come back every time.
;;   table: grows a table by 3,000,000 entries (24 MB: over a 16 MiB budget): -1.
(module
  (memory 1)
  (table 1 funcref)
  (func (export "huge") (result i32)
    (memory.grow (i32.const 7000)))
  (func (export "some") (result i32)
    (drop (memory.grow (i32.const 100)))
    (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)) (i32.const 7))
    (memory.size))
  (func (export "table") (result i32)
    (table.grow (ref.null func) (i32.const 3000000))))
