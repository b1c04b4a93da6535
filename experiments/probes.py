"""Probes for position in hidden states, and their control task.

- `ridge_probe`: a linear probe, closed-form ridge regression onto one-hot
  labels (the lower bound of what is decodable);
- `mlp_probe`: a probe with one hidden layer, trained with Adam; many
  probes (layers x seeds) train at once under `vmap`;
- `control_labels`: Hewitt and Liang's (2019) control task for a position
  probe: each token's label is a fixed random position assigned to its
  content type (`content_types`), so the labels carry no position at all.
  A probe that scores well on the control memorises content, not
  position; selectivity is the position accuracy minus the control
  accuracy of the same probe on the same features.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _standardise(train_x: np.ndarray, test_x: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  return (train_x - mean) / std, (test_x - mean) / std


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, num_classes: int,
                l2: float = 1.0) -> float:
  """Accuracy on (test_x, test_y) of a ridge regression onto one-hot
  labels fitted on (train_x, train_y); features standardised with the
  training statistics."""
  train_x, test_x = _standardise(train_x.astype(np.float64),
                                 test_x.astype(np.float64))
  design = lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1)
  a = design(train_x)
  targets = np.eye(num_classes)[train_y]
  weights = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ targets)
  return float(((design(test_x) @ weights).argmax(1) == test_y).mean())


@functools.partial(jax.jit, static_argnames=('num_classes', 'width',
                                             'steps', 'batch'))
def _mlp_probes(train_x, train_y, test_x, test_y, key, *, num_classes: int,
                width: int, steps: int, batch: int):
  """Trains one MLP probe per leading index of train_x (P, N, D); returns
  each one's test accuracy (P,)."""
  num_features = train_x.shape[-1]
  optimizer = optax.adamw(3e-3, weight_decay=1e-4)

  def init(key):
    k1, k2 = jax.random.split(key)
    return {'w1': jax.random.normal(k1, (num_features, width))
                  / np.sqrt(num_features),
            'b1': jnp.zeros(width),
            'w2': jax.random.normal(k2, (width, num_classes)) / np.sqrt(width),
            'b2': jnp.zeros(num_classes)}

  def logits(params, x):
    return jax.nn.relu(x @ params['w1'] + params['b1']) @ params['w2'] + (
        params['b2'])

  def one(x, y, tx, ty, key):
    init_key, batch_key = jax.random.split(key)
    params = init(init_key)

    def step(carry, key):
      params, opt_state = carry
      index = jax.random.randint(key, (batch,), 0, x.shape[0])
      loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
          logits(p, x[index]), y[index]).mean()
      grads = jax.grad(loss)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                  jax.random.split(batch_key, steps))
    return (logits(params, tx).argmax(-1) == ty).mean()
  keys = jax.random.split(key, train_x.shape[0])
  return jax.vmap(one)(train_x, train_y, test_x, test_y, keys)


def mlp_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, num_classes: int, *, seed: int = 0,
              width: int = 128, steps: int = 1500,
              batch: int = 256) -> np.ndarray:
  """Test accuracies (P,) of P probes with one hidden layer of `width`
  ReLUs, probe p fitted on train_x[p] (N, D) and labels train_y[p] (N,),
  features standardised per probe with its training statistics."""
  pairs = [_standardise(a, b) for a, b in zip(train_x, test_x)]
  train_x = np.stack([p[0] for p in pairs]).astype(np.float32)
  test_x = np.stack([p[1] for p in pairs]).astype(np.float32)
  return np.asarray(_mlp_probes(
      train_x, np.asarray(train_y, np.int32), test_x,
      np.asarray(test_y, np.int32), jax.random.key(seed),
      num_classes=num_classes, width=width, steps=steps, batch=batch))


def content_types(*inputs: np.ndarray) -> list[np.ndarray]:
  """An integer type per token (N, L) of each array, consistent across
  them: the token id for int inputs; for float inputs (N, L, F), the
  distinct feature vector where there are at most 256 of them (pixel
  values), else the index of the largest feature."""
  if inputs[0].ndim == 2:
    return [x.astype(np.int64) for x in inputs]
  flat = np.concatenate([x.reshape(-1, x.shape[-1]) for x in inputs])
  values, index = np.unique(flat, axis=0, return_inverse=True)
  if len(values) > 256:
    return [x.argmax(-1) for x in inputs]
  out, start = [], 0
  for x in inputs:
    size = x.shape[0] * x.shape[1]
    out.append(index.reshape(-1)[start:start + size].reshape(x.shape[:2]))
    start += size
  return out


def control_labels(types: np.ndarray, num_labels: int, seed: int
                   ) -> np.ndarray:
  """Each content type's fixed random label in [0, num_labels): labels
  that depend on what a token is and not on where it is."""
  table = np.random.default_rng([seed, 7919]).integers(
      0, num_labels, size=int(types.max()) + 1)
  return table[types]
