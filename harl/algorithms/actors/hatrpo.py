"""HATRPO: heterogeneous-agent trust-region policy optimisation (Kuba et al., 2022)."""

from __future__ import annotations

import gymnasium
import torch

from harl.algorithms.actors.on_policy_base import OnPolicyBase
from harl.common.buffers.on_policy_actor_buffer import ActorBatch
from harl.models.base.distributions import detach_distribution, kl_divergence
from harl.utils.trpo_util import conjugate_gradient, fisher_vector_product_fn, flat_grad, flat_params, update_model

# Fixed by HARL rather than configured: conjugate-gradient iterations and Fisher damping.
CG_ITERS = 10
FISHER_DAMPING = 0.1


class HATRPO(OnPolicyBase):
    """One natural-gradient step per training call on the whole buffer, inside a KL trust region.

    Reads ``kl_threshold``, ``ls_step``, ``accept_ratio``, ``backtrack_coeff`` besides the base
    keys; has no optimiser (``actor_optimizer`` is None) and no entropy bonus.
    """

    uses_optimizer = False
    train_info_keys = (
        "policy_loss",
        "dist_entropy",
        "actor_grad_norm",
        "ratio",
        "kl",
        "loss_improve",
        "expected_improve",
    )

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.kl_threshold = args["kl_threshold"]
        self.ls_step = args["ls_step"]
        self.accept_ratio = args["accept_ratio"]
        self.backtrack_coeff = args["backtrack_coeff"]

    def update(self, batch: ActorBatch) -> dict[str, float | torch.Tensor]:
        """Trust-region step on ``batch``; the parameters stay unchanged if no step is accepted.

        Returns the train info; ``kl`` is the realised mean KL(old || new) of the accepted step
        (0 when rejected), ``loss_improve`` the realised surrogate gain.
        """
        advantages = self._tensor(batch.advantages)
        factor = self._factor(batch)
        params = list(self.actor.parameters())

        def surrogate() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.distributions.Distribution]:
            # HATRPO surrogate (maximised): L(theta) = E[ M * r(theta) * A ]
            ratio, dist_entropy, dist = self._ratio_and_entropy(batch)
            return self._policy_mean(factor * ratio * advantages, batch), ratio, dist_entropy, dist

        def mean_kl(old_dist, new_dist) -> torch.Tensor:
            return self._policy_mean(kl_divergence(old_dist, new_dist), batch)

        # cuDNN's GRU has no double backward, which the Fisher-vector products need.
        with torch.backends.cudnn.flags(enabled=False):
            loss, ratio, dist_entropy, dist = surrogate()
            loss_grad = flat_grad(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)
            old_dist = detach_distribution(dist)
            # Fisher matrix F = Hessian of KL(pi_old || pi_theta) at theta_old.
            fvp = fisher_vector_product_fn(mean_kl(old_dist, dist), params, FISHER_DAMPING)
            # Natural-gradient direction x = F^-1 g by conjugate gradient.
            step_dir = conjugate_gradient(fvp, loss_grad, CG_ITERS)
            # Step size from the quadratic KL model: 0.5 * (beta x)^T F (beta x) = kl_threshold.
            shs = 0.5 * (step_dir @ fvp(step_dir))

        info = {
            "policy_loss": -loss.detach(),
            "dist_entropy": dist_entropy.detach(),
            "actor_grad_norm": loss_grad.norm(),
            "ratio": ratio.detach().mean(),
            "kl": 0.0,
            "loss_improve": 0.0,
            "expected_improve": 0.0,
        }
        if not torch.isfinite(shs) or shs <= 0:
            return info  # zero or degenerate gradient: nothing to step along
        full_step = torch.sqrt(self.kl_threshold / shs) * step_dir
        expected_improve = loss_grad @ full_step

        # Backtracking line search: shrink the step until the realised KL is inside the trust
        # region and the surrogate improves by at least accept_ratio of its linear prediction.
        old_params = flat_params(self.actor)
        for i in range(self.ls_step):
            fraction = self.backtrack_coeff**i
            update_model(self.actor, old_params + fraction * full_step)
            with torch.no_grad():
                new_loss, new_ratio, new_entropy, new_dist = surrogate()
                kl = mean_kl(old_dist, new_dist)
            loss_improve = new_loss - loss.detach()
            if (
                kl <= self.kl_threshold
                and loss_improve > 0
                and loss_improve / (fraction * expected_improve) > self.accept_ratio
            ):
                info.update(
                    policy_loss=-new_loss,
                    dist_entropy=new_entropy,
                    ratio=new_ratio.mean(),
                    kl=kl,
                    loss_improve=loss_improve,
                    expected_improve=fraction * expected_improve,
                )
                return info
        update_model(self.actor, old_params)
        return info
