; LR+PA with a shared low-rank h: LR's A, B beside PA's hA, hB.
test augment lr(r=3)+pa(k=2, h=r2)
$x: f32[4, 8]
$f: f32[4, 8]
$s1: f32[4, 8]
block 0 axis 1
(resadd $x $f)
states 0: $s1

; precise-output
; variant: lr(r=3)+pa(k=2, h=r2)
; extracted: (+ (+ (+ $f (matmul (matmul $x laurel.0.A) laurel.0.B)) $x) (+ (* laurel.0.gamma0 (matmul (matmul $x laurel.0.hA) laurel.0.hB)) (* laurel.0.gamma1 (matmul (matmul $s1 laurel.0.hA) laurel.0.hB))))
; fired: expand-pa 1, resadd-to-lr-pa 1
; cost: 12.000
; stop: saturated
; params:
;   laurel.0.gamma0 γ0 [] f32 Constant(0.0)
;   laurel.0.gamma1 γ1 [] f32 Constant(0.0)
;   laurel.0.A down-projection of LR [8, 3] f32 ColumnOrthogonal
;   laurel.0.hA down-projection of PA's h [8, 2] f32 ColumnOrthogonal
;   laurel.0.B up-projection of LR [3, 8] f32 Constant(0.0)
;   laurel.0.hB up-projection of PA's h [2, 8] f32 Uniform { low: -0.1, high: 0.1 }
