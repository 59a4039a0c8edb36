"""The PyTorch reference computes what the JAX engine computes (weights copied across)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jbatch import config as config_lib  # noqa: E402
from jbatch import workloads  # noqa: E402
from jbatch.models import registry  # noqa: E402
from jbatch.torch_ref import models as torch_models, train as torch_train  # noqa: E402
from jbatch.train import optim, parallel  # noqa: E402
from jbatch.train.engine import Engine  # noqa: E402


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_outputs_and_three_sgd_steps_match(model):
  c = config_lib.base()
  c.model = model
  c.cnn.channels, c.cnn.hidden, c.cnn.batchnorm = (4, 8), 16, True
  shape = (32,) if model == "mlp" else (10, 10, 1)
  c.synthetic.num_train, c.synthetic.num_test, c.synthetic.input_shape = 96, 8, shape
  workload = workloads.from_config(c)
  ds = workloads.load_data(c, workload)
  eng = Engine(registry.build(c, shape, 10, seed=0), optim.make(c.optimizer),
               parallel.make_mesh("cpu", 1))
  # the workload's twin, made with the weights of its JAX model at the config's seed (0)
  runner = torch_train.TorchRunner(c, workload, ds, "cpu", eng.model())
  tmodel = runner.model
  x = ds.train_x[:32]
  with torch.no_grad():
    tmodel.train()
    t_out = tmodel(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(eng.model()(jnp.asarray(x), train=True), t_out, rtol=1e-4, atol=1e-5)

  step = jax.jit(eng.train_step)
  state = eng.state
  for i in range(3):
    idx = np.arange(32 * i, 32 * (i + 1))
    state, _ = step(state, jnp.asarray(ds.train_x[idx]), jnp.asarray(ds.train_y[idx]))
    runner.step(torch.from_numpy(idx))
  eng.state = state
  expected = torch_models.copy_from_flax(torch_models.build(c, shape, 10), eng.model())
  for got, want in zip(tmodel.parameters(), expected.parameters()):
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
  # BatchNorm's running statistics too (PyTorch's own would average the unbiased variance:
  # with 32 examples a step, 32/31 times Flax's), and so the evaluation-mode outputs.
  buffers = [(n, b) for n, b in tmodel.named_buffers() if "running" in n]
  assert len(buffers) == (2 if model == "mlp" else 4)
  for (name, got), want in zip(buffers, [b for n, b in expected.named_buffers() if "running" in n]):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
  tmodel.eval()
  with torch.no_grad():
    t_eval = tmodel(torch.from_numpy(ds.test_x)).numpy()
  np.testing.assert_allclose(eng.model()(jnp.asarray(ds.test_x), train=False), t_eval,
                             rtol=1e-4, atol=1e-5)
