; Scalars move first, combine, and a product by 1 disappears.
test rules mul-scalar-first,combine-scalars,mul-one
$x: f32[2, 3]
(* (* $x 2) 1/2)

; precise-output
; extracted: $x
; fired: combine-scalars 2, mul-one 1, mul-scalar-first 2
; cost: 0.602 -> 0.000
; stop: saturated
