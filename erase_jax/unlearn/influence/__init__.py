"""The influence core every influence method shares: HVPs, parameter blocks, solvers, sharding.

One module per concern (`hvp`, `blocks`, `trees`, `solvers`, `sharding`, `curvature`); this
package re-exports their public names, so `from erase_jax.unlearn import influence` gives all.

Influence-function unlearning (Koh & Liang, "Understanding Black-box Predictions via Influence
Functions", ICML 2017, eq. 1: I(z) = -H^-1 grad l(z)) needs x = (H + lambda I)^-1 g for the
Hessian H of a loss over some parameters. Nothing here materialises H:

* `hvp(loss_fn, params, v)` is one Hessian-vector product by forward-over-reverse
  differentiation (`jax.jvp` of `jax.grad`, Pearlmutter's trick; reverse-over-reverse where
  the loss has a `custom_vjp`); `hvp_operator` linearises once and then applies H many times
  (what a solver with a fixed operator wants).
* `gauss_newton_operator` is the generalised Gauss-Newton product G v = J^T H_out J v
  (Schraudolph, "Fast Curvature Matrix-Vector Products for Second-Order Gradient Descent",
  Neural Computation 2002; Martens, "Deep learning via Hessian-free optimization", ICML 2010):
  J the Jacobian of the model's outputs (logits, BPR margins) w.r.t. the parameters, H_out the
  closed-form Hessian of the loss w.r.t. those outputs (`output_hessian_product`), plus the
  exact Hessian of a regulariser. It drops the term sum_k (dl/dz_k) Hess z_k that makes the
  Hessian of a non-linear model indefinite, so G is positive semi-definite wherever the loss is
  convex in the outputs, and CG on G + lambda I is well-posed. A model opts in with the hook
  `output_loss_parts(params, context, batch, key) -> (outputs, row weights, penalty or None)`
  and a class attribute `output_loss` naming the loss of the outputs (`OUTPUT_LOSSES`):
  model.loss = sum_i w_i l(outputs_i) / sum_i w_i + penalty. `curvature_operator` picks the
  exact Hessian or G for a method (data-parallel like the loss; on the model's forward-mode
  twin where it has one, `forward_mode_twin`: LightGCN), `resolve_curvature` the default from
  what the model declares (`prefers_gauss_newton`), `newton_damping` (CEU, IDEA, GIF) the
  removal step's damping from the model's `newton_damping`.
* `ParameterBlock` restricts a loss to some parameters: whole leaves (e.g. only the user
  embedding) or some ROWS of one leaf (e.g. the request's users), gathered as a small dense
  array and scattered back, so solvers work on a vector of the block's size.
* `cg_solve`, `richardson_solve`, `lissa_solve` solve (H + lambda I) x = g in one
  `lax.while_loop` each and report a `SolverInfo`; divergence (NaN/Inf, a residual grown far
  beyond the initial one, p^T A p <= 0 for CG) ends the loop with a status code instead of
  being applied silently; the caller decides what to do with it.
* `sharded_loss(loss_fn, n_devices)` evaluates a weighted-mean batch loss with the batch's
  rows split over local devices (`jax.shard_map` + `psum`); gradients and HVPs of it equal the
  single-device ones. `pad_rows` makes the row count a multiple of the device count.

Vectors are pytrees throughout (a block's values are a tuple of arrays). The solvers are pure
traceable functions: call them inside the caller's `jax.jit` (every influence method jits its
whole request), or on their own, where the `while_loop` is compiled as one computation.
"""

from erase_jax.unlearn.influence.blocks import (
    USER_EMBEDDING,
    ParameterBlock,
    all_leaves_block,
    apply_update,
    leaf_block,
    loss_on_block,
    rows_block,
    user_rows_block,
)
from erase_jax.unlearn.influence.curvature import (
    CURVATURES,
    LOGISTIC,
    ORIGINAL_NEWTON_DAMPING,
    OUTPUT_LOSSES,
    SOFTMAX_CROSS_ENTROPY,
    check_curvature,
    curvature_operator,
    forward_mode_twin,
    gauss_newton_operator,
    has_gauss_newton,
    newton_damping,
    output_hessian_product,
    resolve_curvature,
    sharded_gauss_newton_operator,
)
from erase_jax.unlearn.influence.hvp import hvp, hvp_operator, supports_forward_mode
from erase_jax.unlearn.influence.sharding import (
    data_parallel_devices,
    data_parallel_loss,
    loss_is_row_mean,
    pad_rows,
    set_data_parallel_devices,
    sharded_loss,
)
from erase_jax.unlearn.influence.solvers import SolverInfo, SolverStatus, cg_solve, lissa_solve, richardson_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_norm, tree_scale, tree_vdot

__all__ = ["CURVATURES", "LOGISTIC", "ORIGINAL_NEWTON_DAMPING", "OUTPUT_LOSSES", "ParameterBlock", "SOFTMAX_CROSS_ENTROPY", "SolverInfo", "SolverStatus", "USER_EMBEDDING", "all_leaves_block", "apply_update", "cg_solve", "check_curvature", "curvature_operator", "data_parallel_devices", "data_parallel_loss", "forward_mode_twin", "gauss_newton_operator", "has_gauss_newton", "hvp", "hvp_operator", "leaf_block", "lissa_solve", "loss_is_row_mean", "loss_on_block", "newton_damping", "output_hessian_product", "pad_rows", "resolve_curvature", "richardson_solve", "rows_block", "set_data_parallel_devices", "sharded_gauss_newton_operator", "sharded_loss", "supports_forward_mode", "tree_axpy", "tree_norm", "tree_scale", "tree_vdot", "user_rows_block"]
