"""Small shared fixtures for the on-policy model, buffer and algorithm tests."""

from __future__ import annotations


def make_args(**overrides) -> dict:
    """A complete ``{**train, **model, **algo}`` config with HARL's defaults, scaled down."""
    args = {
        # train
        "episode_length": 8,
        "n_rollout_threads": 3,
        "use_valuenorm": True,
        "use_proper_time_limits": True,
        # model
        "hidden_sizes": [16, 16],
        "activation_func": "relu",
        "use_feature_normalization": True,
        "initialization_method": "orthogonal_",
        "gain": 0.01,
        "use_naive_recurrent_policy": False,
        "use_recurrent_policy": False,
        "recurrent_n": 1,
        "data_chunk_length": 4,
        "lr": 5e-4,
        "critic_lr": 5e-4,
        "opti_eps": 1e-5,
        "weight_decay": 0,
        "std_x_coef": 1.0,
        "std_y_coef": 0.5,
        # algo
        "ppo_epoch": 2,
        "a2c_epoch": 2,
        "critic_epoch": 2,
        "use_clipped_value_loss": True,
        "clip_param": 0.2,
        "actor_num_mini_batch": 2,
        "critic_num_mini_batch": 2,
        "entropy_coef": 0.01,
        "value_loss_coef": 1.0,
        "use_max_grad_norm": True,
        "max_grad_norm": 10.0,
        "use_gae": True,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "use_huber_loss": True,
        "use_policy_active_masks": True,
        "huber_delta": 10.0,
        "action_aggregation": "prod",
        "share_param": False,
        "fixed_order": False,
        "kl_threshold": 0.01,
        "ls_step": 10,
        "accept_ratio": 0.5,
        "backtrack_coeff": 0.8,
    }
    unknown = set(overrides) - set(args)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    args.update(overrides)
    return args
