"""The HA sequential property: in one round agent m's update sees agents 1..m-1 already updated
and m+1..n not; a simultaneous round sees only pre-round actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e2e_helpers import TINY_OFF_POLICY, train

from harl.common.sequential_update import sequential_round, update_order


def _record_round(order, resample_enabled):
    joint = [f"old{i}" for i in range(len(order))]
    seen = {}

    def update_agent(agent_id, joint_actions):
        seen[agent_id] = list(joint_actions)
        return {"agent": agent_id}

    resample = (lambda agent_id: f"new{agent_id}") if resample_enabled else None
    infos = sequential_round(np.asarray(order), joint, update_agent, resample)
    return seen, infos, joint


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [2, 0, 3, 1]])
def test_sequential_round_sees_predecessors_updated_and_successors_not(order):
    seen, infos, final = _record_round(order, resample_enabled=True)
    for position, agent_id in enumerate(order):
        before, after = order[:position], order[position + 1 :]
        assert all(seen[agent_id][j] == f"new{j}" for j in before)
        assert all(seen[agent_id][j] == f"old{j}" for j in after + [agent_id])
    assert infos == {i: {"agent": i} for i in order}
    assert final == [f"new{i}" for i in range(len(order))]


def test_simultaneous_round_sees_only_pre_round_actions():
    seen, _, final = _record_round([1, 0, 2], resample_enabled=False)
    assert all(actions == ["old0", "old1", "old2"] for actions in seen.values())
    assert final == ["old0", "old1", "old2"]


def test_update_order_fixed_or_permuted():
    np.testing.assert_array_equal(update_order(4, fixed_order=True), np.arange(4))
    np.random.seed(0)
    orders = {tuple(update_order(4, fixed_order=False)) for _ in range(30)}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2, 3] for o in orders)


def test_ha_runner_trains_each_agent_against_freshly_updated_predecessors(tmp_path):
    """With deterministic HADDPG actors, the joint action handed to agent m's update holds the
    post-update actions of the agents before it and the pre-update actions of those after."""
    runner = train("haddpg", "pettingzoo_mpe", str(tmp_path), {**TINY_OFF_POLICY, "num_env_steps": 120})
    batch = runner.buffer.sample().to(runner.device)
    n = runner.num_agents
    with torch.no_grad():
        pre = [runner.actor[i].sample(batch.obs[i])[0].clone() for i in range(n)]
    seen = {}
    order_taken = []
    for agent_id, actor in enumerate(runner.actor):
        original = actor.train

        def recording_train(obs, share_obs, joint_actions, agent, critic, *rest, _original=original):
            seen[agent] = [a.clone() for a in joint_actions]
            order_taken.append(agent)
            return _original(obs, share_obs, joint_actions, agent, critic, *rest)

        actor.train = recording_train
    samples = [(p.clone(), None) for p in pre]
    runner.train_actors(batch, samples)
    with torch.no_grad():
        post = [runner.actor[i].sample(batch.obs[i])[0] for i in range(n)]
    assert sorted(order_taken) == list(range(n))
    for position, agent_id in enumerate(order_taken):
        for j in order_taken[:position]:
            torch.testing.assert_close(seen[agent_id][j], post[j])
        for j in order_taken[position:]:
            torch.testing.assert_close(seen[agent_id][j], pre[j])
    assert all(not torch.allclose(pre[i], post[i]) for i in range(n)), "every actor must have moved"
