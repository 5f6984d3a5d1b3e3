; LR's factors need D: a symbolic channel count is refused, with the reason.
test augment lr
$x: f32[2, D]
$f: f32[2, D]
block 0 axis 1
(resadd $x $f)

; precise-output
; error: extraction failed: e-class 2 has no term of finite cost (every term uses a forbidden e-node); refused: [resadd-to-lr at e-class 2: the channel count is not a known number]
