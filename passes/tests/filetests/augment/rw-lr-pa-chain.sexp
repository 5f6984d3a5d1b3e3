; The paper's Eq. 6 on two chained blocks: block 1 reads block 0's input as its
; earlier state; each state gets its own rank-2 map.
test augment rw(raw)+lr(r=2)+pa(k=3, h=id)
$x: f32[4, 8]
weight $w: f32[8, 8]
block 0 axis 1
(resadd $x (matmul $x $w))
block 1 axis 1
(resadd (resadd $x (matmul $x $w)) (matmul (resadd $x (matmul $x $w)) $w))
states 1: $x

; precise-output
; variant: rw(raw)+lr(r=2)+pa(k=3, h=id)
; extracted: (+ (* laurel.0.alpha (matmul $x $w)) (* laurel.0.beta (+ $x (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0)))))
; extracted: (+ (* laurel.1.alpha (matmul (+ (* laurel.0.alpha (matmul $x $w)) (* laurel.0.beta (+ $x (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0))))) $w)) (* laurel.1.beta (+ (+ (* laurel.0.alpha (matmul $x $w)) (* laurel.0.beta (+ $x (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0))))) (+ (* laurel.1.gamma0 (matmul (matmul (+ (* laurel.0.alpha (matmul $x $w)) (* laurel.0.beta (+ $x (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0))))) laurel.1.A0) laurel.1.B0)) (* laurel.1.gamma1 (matmul (matmul $x laurel.1.A1) laurel.1.B1))))))
; fired: expand-rw 2, resadd-to-rw-lr-pa 2
; cost: 20.000
; stop: saturated
; params:
;   laurel.0.alpha α [] f32 Constant(1.0)
;   laurel.0.beta β [] f32 Constant(1.0)
;   laurel.0.gamma0 γ0 [] f32 Constant(0.0)
;   laurel.0.A0 down-projection of state 0 [8, 2] f32 ColumnOrthogonal
;   laurel.0.B0 up-projection of state 0 [2, 8] f32 Uniform { low: -0.1, high: 0.1 }
;   laurel.1.alpha α [] f32 Constant(1.0)
;   laurel.1.beta β [] f32 Constant(1.0)
;   laurel.1.gamma0 γ0 [] f32 Constant(0.0)
;   laurel.1.gamma1 γ1 [] f32 Constant(0.0)
;   laurel.1.A0 down-projection of state 0 [8, 2] f32 ColumnOrthogonal
;   laurel.1.A1 down-projection of state 1 [8, 2] f32 ColumnOrthogonal
;   laurel.1.B0 up-projection of state 0 [2, 8] f32 Uniform { low: -0.1, high: 0.1 }
;   laurel.1.B1 up-projection of state 1 [2, 8] f32 Uniform { low: -0.1, high: 0.1 }
