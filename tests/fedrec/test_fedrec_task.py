"""The client protocol: what an upload holds, the attacks' effect, the defense's bounds."""

import pytest
import torch

from fedharness.attacks import AttackContext
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector
from fedharness.row_sparse import RowBlock, RowSparse, touched_rows
from fedharness import aggregators
from fedrec import models
from fedrec.hierarchical_clipping import HierarchicalClip
from fedrec.synthetic_users import SyntheticUsers
from labcore.errors import InputError
from tests.fedrec.conftest import tiny_task


@pytest.mark.parametrize("model", ["mf", "ncf"])
def test_the_upload_holds_item_rows_and_shared_layers_but_no_user_embedding(ml100k_rows, model):
    task = tiny_task(ml100k_rows, model=model)
    names = task.federated_names(task.model)
    shared = sum(p.numel() for n, p in task.model.named_parameters() if n != "item")
    assert names[0] == "item" and not any("user" in n for n in names)
    g = get_vector(task.model, names)
    local = task.train_clients(g, [2, 3], [11, 12], LocalConfig(1, 2.0, 1))
    assert local.shape == (2, task.split.num_items * task.model.item.shape[1] + shared)
    # only the rows of the client's own profile (positives and sampled negatives) change
    rows = touched_rows(local - g, task.row_blocks(task.model)[0])
    profile = task.profile(0, 11)[0]
    assert set(torch.nonzero(rows[0]).flatten().tolist()) == set(profile.tolist())


def test_identical_profiles_give_identical_uploads_whatever_the_user_index(ml100k_rows):
    task = tiny_task(ml100k_rows)
    g = get_vector(task.model, task.federated_names(task.model))
    prof = task.profile(0, 5)
    a, b = task.train_profiles(g, [prof, prof])
    assert torch.equal(a, b)  # the upload is a function of the profile and the global model only


def test_mf_fast_path_equals_the_generic_vmapped_client(ml100k_rows):
    from fedrec import local

    task = tiny_task(ml100k_rows)
    item = task.model.item.detach()
    profiles = [task.profile(u, u) for u in range(4)]
    key, deltas, _ = local.mf_train_profiles(task.hyper, item, profiles)
    fast = torch.zeros(len(profiles) * item.shape[0], item.shape[1])
    fast[key] = deltas
    generic, _ = local.train_profiles(task.model, task.hyper, item, {}, profiles, chunk=3)
    assert torch.allclose(fast.view_as(generic), generic, atol=1e-5)


def test_synthetic_users_raise_the_target_score_on_a_tiny_model(ml100k_rows):
    task = tiny_task(ml100k_rows, num_fake=2)
    g = get_vector(task.model, task.federated_names(task.model))
    for r in range(3):  # a few clean rounds so that items carry signal
        local = task.train_clients(g, list(range(2, task.num_clients)), list(range(task.num_clients - 2)), LocalConfig(1, 2.0, 1))
        g = g + RowSparse(aggregators.get("mean"), task.row_blocks(task.model))(local - g)
    users = task.fit_users(g, task.eval_profiles)
    before = task.all_scores(g, users)[:, task.targets].mean()
    ctx = AttackContext(round=4, global_vec=g, attacker_data=[{}, {}], attacker_seeds=[1, 2], benign_locals=torch.zeros(0),
                        engine=None, task=task, num_clients=task.num_clients, eta=1.0, local=LocalConfig())
    uploads = SyntheticUsers(users_per_client=4, profile_size=5, num_alternatives=5)(ctx)
    changed = touched_rows(uploads - g, task.row_blocks(task.model)[0])
    assert set(torch.nonzero(changed.any(0)).flatten().tolist()) == set(task.targets)
    poisoned = g + RowSparse(aggregators.get("mean"), task.row_blocks(task.model))(uploads - g)
    after = task.all_scores(poisoned, users)[:, task.targets].mean()
    assert after > before + 0.1


def test_hierarchical_clipping_bounds_every_row_and_every_upload():
    torch.manual_seed(0)
    u = torch.randn(6, 5 * 3 + 4) * torch.tensor([1, 10, 0.1, 5, 2, 50]).unsqueeze(1)
    block = RowBlock(0, 5, 3)
    touched = [touched_rows(u, block)]
    clip = HierarchicalClip(row_bound=0.7, upload_bound=1.5)
    clipped, info = clip.clip(u, [block], touched)
    assert block.view(clipped).norm(dim=2).max() <= 0.7 + 1e-5
    assert clipped.norm(dim=1).max() <= 1.5 + 1e-5
    adaptive, info = HierarchicalClip().clip(u, [block], touched)
    assert block.view(adaptive).norm(dim=2).max() <= info["row_bound"] + 1e-5
    assert adaptive.norm(dim=1).max() <= info["upload_bound"] + 1e-5


def test_sparsified_updating_damps_rows_touched_by_few_clients():
    from fedharness.row_sparse import RowBlock

    u = torch.zeros(4, 4)
    u[0, :2] = torch.tensor([0.3, 0.4])      # row 0: one client
    u[:, 2:] = torch.tensor([0.3, 0.4])      # row 1: all four
    out = RowSparse(HierarchicalClip(row_bound=1.0, upload_bound=10.0, min_clients=4), [RowBlock(0, 2, 2)])(u)
    assert torch.allclose(out, torch.tensor([0.075, 0.1, 0.3, 0.4]))


def test_bad_attack_parameters_are_input_errors():
    with pytest.raises(InputError):
        SyntheticUsers(profile_size=0)
    with pytest.raises(InputError):
        HierarchicalClip(row_bound=-1.0)


def test_ncf_batched_clients_equal_the_generic_vmapped_client(ml100k_rows):
    from fedrec import local, local_ncf

    task = tiny_task(ml100k_rows, model="ncf")
    item, shared = task.parts(get_vector(task.model, task.federated_names(task.model)))
    profiles = [task.profile(u, u) for u in range(5)]
    hyper = local.Hyper(3, 1.0, 0.01, 2, 2.0)  # two local epochs: the clients' shared copies diverge
    key, deltas, d_shared, users = local_ncf.train_profiles(task.model, hyper, item, shared, profiles, chunk=2)
    fast = torch.zeros(len(profiles) * item.shape[0], item.shape[1])
    fast[key] = deltas
    g_item, g_shared = local.train_profiles(task.model, hyper, item, shared, profiles, chunk=3)
    assert torch.allclose(fast.view_as(g_item), g_item, atol=1e-5)
    assert torch.allclose(d_shared, torch.cat([g_shared[k].flatten(1) for k in shared], dim=1), atol=1e-5)
    assert d_shared.abs().sum() > 0 and deltas.abs().sum() > 0
    fitted = local_ncf.fit_users(task.model, hyper, item, shared, profiles, chunk=4)
    assert torch.allclose(fitted, local.fit_users(task.model, hyper, item, shared, profiles, chunk=5), atol=1e-5)
    generic = torch.vmap(lambda u: models.score(task.model, shared, u, item))(fitted)
    assert torch.allclose(local_ncf.all_scores(task.model, shared, fitted, item, chunk=2), generic, atol=1e-5)
