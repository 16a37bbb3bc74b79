"""Control (a) of issue 32, the critic alone: does HAQO's twin joint-action Q critic, trained on
data of a FIXED good policy, learn that policy's values and rank its actions right?

The teacher is a trained HAPPO policy of the SMAX map ``--map_name`` (3m by default; feed-forward
actors, a HARL run directory with ``config.json`` and ``models/actor_agent{i}.pt``). It plays
``--steps`` env steps with its
SAMPLED actions (the behaviour data), which go into the repo's EP replay buffer
(:class:`OffPolicyBufferEP`, filled by ``insert`` exactly as the off-policy runner does). A fresh
:class:`TwinContinuousQCritic`, built as HAQORunner builds it from
``tuned_configs/smax/3s5z/haqo/config.json`` (EP state, [64, 64, 64], critic_lr 1e-3, batch 256,
n_step 3, gamma 0.99, polyak 0.005, value normalisation, Huber delta 10, ``--critic_form``) on that
map, then makes ``--updates`` updates ``critic.train(batch, next_actions)`` + ``critic.soft_update()``
with the next joint action SAMPLED FROM THE TEACHER at the n-step window's next state (what
HAQORunner does with its own actor, ``target_candidates 1``): the critic evaluates the teacher.

Every ``--report_every`` updates, on held-out states of separately collected teacher episodes
(the evaluation seeds of the env factory):

* RMSE, bias and correlation of ``min(Q1, Q2)(s, a_taken)``, de-normalised, against the
  discounted Monte-Carlo return of the rest of the episode (gamma 0.99). Steps of episodes cut
  by the time limit (``bad_transition``), or still running when collection stopped, have no
  full return and are left out of these three numbers (and out of the MC reference's training).
* per agent, the fraction of its live states (more than the no-op available) where the arg-max
  over the AVAILABLE actions of ``min Q`` (the other agents at their taken actions) is the
  teacher's most likely action; ``random`` is the chance agreement of a uniform pick (the mean
  of 1 / number of available actions); and the mean of ``max_a Q - Q(teacher's action)``, how
  much better than the teacher's choice the critic rates its own favourite (return units).

The last row is a reference: the same network trained for as many steps by plain regression on
the Monte-Carlo returns of the training data (no bootstrapping). Single returns are noisy, so
its RMSE is about the noise floor that no critic can beat on these held-out returns.

    # the teacher: HAPPO on 3m without its GRU, about 4 min (wins ~0.79 of battles at 1M)
    python examples/train.py --load_config tuned_configs/smax/3s5z/happo/config.json --map_name 3m --exp_name teacher \
        --use_recurrent_policy False --num_env_steps 1000000 --eval_interval 5 --torch_threads 1 --seed 1
    python benchmarks/critic_control.py --teacher results/smax/3m/happo/teacher/seed-00001-*   # ~6 min on one core
    python benchmarks/critic_control.py --quick --random_teacher          # smoke test, ~30 s
    # another map: a HAPPO teacher of that map and --map_name (3s5z: ~6 min teacher at 500k, see HAQO_DISCRETE.md)
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harl.algorithms.actors.happo import HAPPO
from harl.algorithms.critics import CRITIC_REGISTRY
from harl.common.buffers.off_policy_buffer_ep import OffPolicyBufferEP
from harl.envs import make_eval_env, make_train_env
from harl.models.value_function_models.continuous_q_net import CRITIC_FORMS
from harl.runners.base_runner import flatten_sections
from harl.utils.configs_tools import get_defaults_yaml_args, load_config_json, update_args
from harl.utils.envs_tools import set_seed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNED_CONFIG = os.path.join(REPO, "tuned_configs", "smax", "3s5z", "haqo", "config.json")
Tensor = torch.Tensor


# ----------------------------------------------------------------------------- set-up
def critic_args(map_name: str, critic_form: str, n_envs: int, buffer_size: int) -> tuple[dict, dict]:
    """HAQO's flat args (as the runner builds them) and env args: the tuned 3s5z config on
    ``map_name`` with the critic's ``critic_form``."""
    _, algo_args, env_args = load_config_json(TUNED_CONFIG)
    update_args(
        {
            "map_name": map_name,
            "critic_form": critic_form,
            "n_rollout_threads": n_envs,
            "buffer_size": buffer_size,
            "cuda": False,
        },
        algo_args,
        env_args,
        algo="haqo",
        env="smax",
    )
    return {**flatten_sections(algo_args), **env_args}, env_args


def build_teacher(envs, teacher_dir: str | None) -> list[HAPPO]:
    """The HAPPO actors of ``teacher_dir`` (its config.json, models/actor_agent{i}.pt), or
    randomly initialised HAPPO actors (YAML defaults) when ``teacher_dir`` is None."""
    if teacher_dir is None:
        algo_args, env_args = get_defaults_yaml_args("happo", "smax")
    else:
        _, algo_args, env_args = load_config_json(os.path.join(teacher_dir, "config.json"))
    flat = {**flatten_sections(algo_args), **env_args}
    if flat["use_recurrent_policy"] or flat["use_naive_recurrent_policy"]:
        raise ValueError("the teacher must be a feed-forward policy (this control keeps no rnn states)")
    actors = []
    for i in range(envs.n_agents):
        actor = HAPPO(flat, envs.observation_spaces[i], envs.action_spaces[i])
        if teacher_dir is not None:
            path = os.path.join(teacher_dir, "models", f"actor_agent{i}.pt")
            actor.actor.load_state_dict(torch.load(path, map_location="cpu"))
        actor.prep_rollout()
        actors.append(actor)
    return actors


@torch.no_grad()
def teacher_actions(teacher: list[HAPPO], obs, avail, deterministic: bool) -> list[np.ndarray]:
    """Per agent ``(B, 1)`` action indices: sampled, or the most likely available action."""
    actions = []
    for actor, o, a in zip(teacher, obs, avail):
        n = len(o)
        rnn = np.zeros((n, 1, actor.args["hidden_sizes"][-1]), np.float32)
        act, _, _ = actor.get_actions(o, rnn, np.ones((n, 1), np.float32), a, deterministic)
        actions.append(act.cpu().numpy().astype(np.int64).reshape(n, 1))
    return actions


# ----------------------------------------------------------------------------- data
@dataclass
class Episodes:
    """``T`` vectorised steps of ``E`` envs, arrays ``(T, E, ...)``; per agent lists."""

    share_obs: np.ndarray  # (T, E, s) the EP state
    obs: list[np.ndarray]  # (T, E, d)
    avail: list[np.ndarray]  # (T, E, n)
    actions: list[np.ndarray]  # (T, E, 1) taken (sampled) actions
    greedy: list[np.ndarray]  # (T, E, 1) the teacher's most likely actions
    rewards: np.ndarray  # (T, E) team reward
    done: np.ndarray  # (T, E) the episode ended after this step
    truncated: np.ndarray  # (T, E) ... by the time limit
    returns: np.ndarray  # (T, E) discounted MC return of the rest of the episode
    complete: np.ndarray  # (T, E) the return is a full one (the episode terminated in the data)


def collect(envs, teacher: list[HAPPO], vec_steps: int, buffer: OffPolicyBufferEP | None, gamma: float) -> Episodes:
    """Play ``vec_steps`` vectorised steps with the teacher's sampled actions; every step also
    goes into ``buffer`` (as the off-policy runner inserts it) when one is given."""
    fields: dict[str, list] = {
        k: [] for k in ("share_obs", "obs", "avail", "actions", "greedy", "rewards", "done", "bad")
    }
    obs, share_obs, avail = envs.reset()
    for _ in range(vec_steps):
        actions = teacher_actions(teacher, obs, avail, deterministic=False)
        result = envs.step(actions)
        if buffer is not None:
            buffer.insert(share_obs, obs, actions, avail, result)
        fields["share_obs"].append(np.array(share_obs[:, 0]))
        fields["obs"].append([np.array(o) for o in obs])
        fields["avail"].append([np.array(a) for a in avail])
        fields["actions"].append(actions)
        fields["greedy"].append(teacher_actions(teacher, obs, avail, deterministic=True))
        fields["rewards"].append(np.asarray(result.rewards)[:, 0])
        fields["done"].append([info["episode_done"] for info in result.infos])
        fields["bad"].append([info["bad_transition"] for info in result.infos])
        obs, share_obs, avail = result.obs, result.share_obs, result.available_actions
    per_agent = lambda name: [np.stack(x) for x in zip(*fields[name])]  # noqa: E731
    rewards, done, bad = (np.asarray(fields[k]) for k in ("rewards", "done", "bad"))
    returns, complete = mc_returns(rewards, done.astype(bool), bad.astype(bool), gamma)
    return Episodes(
        np.stack(fields["share_obs"]),
        per_agent("obs"),
        per_agent("avail"),
        per_agent("actions"),
        per_agent("greedy"),
        rewards,
        done.astype(bool),
        bad.astype(bool),
        returns,
        complete,
    )


def mc_returns(
    rewards: np.ndarray, done: np.ndarray, truncated: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Discounted return to the episode's end of every step ``(T, E)``, and whether it is a
    full one: False for episodes cut by the time limit or still open at the last step."""
    returns = np.zeros_like(rewards, dtype=np.float64)
    complete = np.zeros(rewards.shape, dtype=bool)
    running = np.zeros(rewards.shape[1])
    full = np.zeros(rewards.shape[1], dtype=bool)  # the open episode (seen backwards) terminated
    for t in reversed(range(len(rewards))):
        running = np.where(done[t], 0.0, running)
        full = np.where(done[t], ~truncated[t], full)
        running = rewards[t] + gamma * running
        returns[t], complete[t] = running, full
    return returns.astype(np.float32), complete


def flat_steps(data: Episodes) -> dict:
    """The steps of ``data`` as ``(T * E, ...)`` arrays (per agent lists)."""
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return {
        "share_obs": flat(data.share_obs),
        "obs": [flat(o) for o in data.obs],
        "avail": [flat(a) for a in data.avail],
        "actions": [flat(a) for a in data.actions],
        "greedy": [flat(a) for a in data.greedy],
        "returns": flat(data.returns),
        "complete": flat(data.complete),
    }


# ----------------------------------------------------------------------------- critic
def td_update(critic, buffer: OffPolicyBufferEP, teacher: list[HAPPO]) -> dict[str, float]:
    """One HAQO critic update whose next joint action is sampled from the teacher."""
    batch = buffer.sample().to("cpu")
    nxt = teacher_actions(teacher, batch.next_obs, batch.next_available_actions, deterministic=False)
    next_actions = critic.encode_actions([torch.as_tensor(a) for a in nxt])
    info = critic.train(batch, next_actions)
    critic.soft_update()
    return info


def mc_update(critic, optimizer: torch.optim.Optimizer, train: dict, batch_size: int) -> float:
    """One regression step of both heads on the MC returns of complete training steps."""
    idx = np.random.choice(train["mc_index"], batch_size)
    state = torch.as_tensor(train["share_obs"][idx])
    joint = torch.cat(critic.encode_actions([torch.as_tensor(a[idx]) for a in train["actions"]]), -1)
    target = torch.as_tensor(train["returns"][idx]).unsqueeze(-1)
    obs = [torch.as_tensor(o[idx]) for o in train["obs"]]
    loss = F.mse_loss(critic.critic(state, joint, obs if critic.needs_obs else None), target.expand(-1, critic.n_heads))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def q_values(critic, share_obs: Tensor, joint: Tensor, obs: list[Tensor]) -> Tensor:
    """De-normalised ``min(Q1, Q2)`` (raw return units), ``(*K, B)``."""
    q = critic.min_q(share_obs, joint, obs=obs)
    if critic.value_normalizer is not None:
        q = torch.as_tensor(critic.value_normalizer.denormalize(q.reshape(-1, 1))).reshape(q.shape)
    return q.squeeze(-1)


@torch.no_grad()
def evaluate(critic, test: dict, n_actions: int) -> dict[str, object]:
    """RMSE, bias, correlation against MC returns; per agent, the arg-max agreement, its chance
    level and the mean of ``max_a Q - Q(teacher's action)`` over live states (return units)."""
    state = torch.as_tensor(test["share_obs"])
    obs = [torch.as_tensor(o) for o in test["obs"]]
    taken = critic.encode_actions([torch.as_tensor(a) for a in test["actions"]])
    q = q_values(critic, state, torch.cat(taken, -1), obs).numpy()[test["complete"]]
    g = test["returns"][test["complete"]]
    out: dict[str, object] = {
        "rmse": float(np.sqrt(np.mean((q - g) ** 2))),
        "bias": float(np.mean(q - g)),
        "corr": float(np.corrcoef(q, g)[0, 1]),
    }
    agree, chance, gap = [], [], []
    eye = torch.eye(n_actions)
    for i, avail in enumerate(test["avail"]):
        live = avail[:, 0] == 0  # SMAX: only a dead agent has the no-op
        candidates = [t.expand(n_actions, *t.shape) for t in taken]
        candidates[i] = eye[:, None, :].expand(n_actions, len(state), n_actions)
        qi = q_values(critic, state, torch.cat(candidates, -1), obs).T.numpy()  # (B, n)
        masked = np.where(avail > 0, qi, -np.inf)
        greedy = test["greedy"][i][:, 0]
        agree.append(float(np.mean(masked.argmax(-1)[live] == greedy[live])))
        chance.append(float(np.mean(1.0 / avail[live].sum(-1))))
        gap.append(float(np.mean((masked.max(-1) - qi[np.arange(len(qi)), greedy])[live])))
    out["agree"], out["chance"], out["gap"] = agree, chance, gap
    return out


# ----------------------------------------------------------------------------- report
def row(label: str, loss: float, result: dict) -> str:
    triple = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    return (
        f"| {label} | {loss:.4f} | {result['rmse']:.3f} | {result['bias']:+.3f} | {result['corr']:.3f} | "
        f"{triple(result['agree'])} | {triple(result['chance'])} | {triple(result['gap'])} |"
    )


def describe(name: str, data: Episodes) -> str:
    """One line about a data set: steps, episode ends, what the MC metrics leave out, returns."""
    ends = data.done.sum()
    episode_returns = []
    starts = np.ones(data.done.shape[1], dtype=bool)
    for t in range(len(data.done)):  # episode return = MC return at the episode's first step
        episode_returns.extend(data.returns[t][starts & data.complete[t]])
        starts = data.done[t]
    teacher_taken = np.mean([np.mean(a == g) for a, g in zip(data.actions, data.greedy)])
    return (
        f"{name}: {data.done.size:,} steps, {int(ends):,} episode ends ({int(data.truncated.sum()):,} by the "
        f"time limit); {int((~data.complete).sum()):,} steps without a full MC return (time-limit cut or "
        f"open at the end) are left out of the MC metrics; mean discounted return from the start "
        f"{np.mean(episode_returns):.3f} over {len(episode_returns)} complete episodes; "
        "sampled = teacher's greedy action on "
        f"{teacher_taken:.1%} of agent-steps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="HAPPO run directory of SMAX --map_name (feed-forward actors)")
    parser.add_argument("--map_name", default="3m", help="SMAX map of the teacher and the critic")
    parser.add_argument(
        "--critic_form",
        default="joint",
        choices=CRITIC_FORMS,
        help="the critic's Q form (HAQO's model key critic_form)",
    )
    parser.add_argument("--random_teacher", action="store_true", help="randomly initialised teacher (tests)")
    parser.add_argument("--steps", type=int, default=100_000, help="training env steps")
    parser.add_argument("--test_steps", type=int, default=10_000, help="held-out env steps")
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--report_every", type=int, default=2_000)
    parser.add_argument("--n_envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="5k steps, 1k held-out, 500 updates")
    args = parser.parse_args()
    if not args.random_teacher:
        if not args.teacher:
            parser.error(
                "give --teacher RUN_DIR (a HAPPO run of SMAX 3m without its GRU, see the module doc) "
                "or --random_teacher"
            )
        if not os.path.isfile(os.path.join(args.teacher, "config.json")) or not os.path.isdir(
            os.path.join(args.teacher, "models")
        ):
            parser.error(f"--teacher {args.teacher}: not a run directory (needs config.json and models/)")
        teacher_map = load_config_json(os.path.join(args.teacher, "config.json"))[2].get("map_name")
        if teacher_map != args.map_name:
            parser.error(f"--teacher {args.teacher} ran on SMAX {teacher_map}, not --map_name {args.map_name}")
    if args.quick:
        args.steps, args.test_steps, args.updates, args.report_every = 5_000, 1_000, 500, 250
    torch.set_num_threads(args.threads)
    for line in run(args):
        print(line, flush=True)


def run(args: argparse.Namespace):
    """Yield the report's lines as they come (set-up notes, then the table's rows)."""
    start = time.perf_counter()
    set_seed(args.seed)
    vec_steps = -(-args.steps // args.n_envs)
    flat, env_args = critic_args(args.map_name, args.critic_form, args.n_envs, vec_steps * args.n_envs)
    envs = make_train_env("smax", args.seed, args.n_envs, env_args, 0)
    test_envs = make_eval_env("smax", args.seed, args.n_envs, env_args, 0)
    teacher = build_teacher(envs, None if args.random_teacher else args.teacher)
    share_space, n_actions = envs.share_observation_spaces[0], int(envs.action_spaces[0].n)
    buffer = OffPolicyBufferEP(flat, share_space, envs.n_agents, envs.observation_spaces, envs.action_spaces)
    train_data = collect(envs, teacher, vec_steps, buffer, flat["gamma"])
    test_data = collect(test_envs, teacher, -(-args.test_steps // args.n_envs), None, flat["gamma"])
    yield describe("training data", train_data)
    yield describe("held-out data", test_data)
    yield f"collection: {time.perf_counter() - start:.0f} s"

    train, test = flat_steps(train_data), flat_steps(test_data)
    train["mc_index"] = np.flatnonzero(train["complete"])
    critic_cls = CRITIC_REGISTRY["haqo"]
    critic, reference = (
        critic_cls(
            flat, share_space, envs.action_spaces, envs.n_agents, "EP", torch.device("cpu"), envs.observation_spaces
        )
        for _ in range(2)
    )
    ref_optimizer = torch.optim.Adam(reference.critic.parameters(), lr=flat["critic_lr"])
    reference.value_normalizer = None  # raw-return regression
    yield (
        "\n| updates | TD loss (window mean) | RMSE vs MC | bias (Q - G) | corr | argmax min-Q = teacher, "
        "agent 0 / 1 / 2 | uniform random, agent 0 / 1 / 2 | max Q - Q(teacher), agent 0 / 1 / 2 |"
    )
    yield "| --- | --- | --- | --- | --- | --- | --- | --- |"
    losses, train_start = [], time.perf_counter()
    for update in range(1, args.updates + 1):
        losses.append(td_update(critic, buffer, teacher)["critic_loss"])
        if update % args.report_every == 0 or update == args.updates:
            yield row(str(update), float(np.mean(losses)), evaluate(critic, test, n_actions))
            losses = []
    td_time = time.perf_counter() - train_start
    ref_losses = [mc_update(reference, ref_optimizer, train, flat["batch_size"]) for _ in range(args.updates)]
    yield row(
        f"MC regression, {args.updates}",
        float(np.mean(ref_losses[-args.report_every :])),
        evaluate(reference, test, n_actions),
    )
    yield (
        f"\nTD training {td_time:.0f} s; total {time.perf_counter() - start:.0f} s "
        f"(TD loss: per head Huber on normalised targets, summed over the 2 heads; MC: MSE in return units)"
    )
    envs.close()
    test_envs.close()


if __name__ == "__main__":
    main()
