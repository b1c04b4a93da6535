"""The posenc encoder classifier in PyTorch, for the side-by-side benchmark.

The same model as `posenc.models.EncoderClassifier` with learned positions
and mean pooling: Dense input projection, a learned (1, T, D) table drawn
from N(0, 1), pre-LayerNorm blocks (attention without a key bias, tanh GELU
MLP of width mlp_dim), final LayerNorm, mean over positions, linear head;
Adam on softmax cross-entropy. Only the benchmark imports it.

`attention` picks how the blocks compute softmax(q k^T / sqrt(K)) v: 'softmax'
writes it out (the (B, H, T, T) weights exist, as in posenc's einsum path);
'sdpa' calls `torch.nn.functional.scaled_dot_product_attention`, whose CPU
flash kernel never holds them (as posenc's blocked path). Same parameters,
same function.
"""

import math

import torch
from torch import nn

ATTENTION_NAMES = ('softmax', 'sdpa')


class _Block(nn.Module):

  def __init__(self, d_model: int, num_heads: int, mlp_dim: int,
               attention: str):
    super().__init__()
    self.num_heads = num_heads
    self.attention = attention
    self.ln_attn = nn.LayerNorm(d_model)
    self.query = nn.Linear(d_model, d_model)
    self.key = nn.Linear(d_model, d_model, bias=False)
    self.value = nn.Linear(d_model, d_model)
    self.out = nn.Linear(d_model, d_model)
    self.ln_mlp = nn.LayerNorm(d_model)
    self.mlp_in = nn.Linear(d_model, mlp_dim)
    self.mlp_out = nn.Linear(mlp_dim, d_model)

  def forward(self, x):
    b, t, d = x.shape
    h, k = self.num_heads, d // self.num_heads
    y = self.ln_attn(x)
    split = lambda z: z.view(b, t, h, k).transpose(1, 2)  # B, H, T, K
    q, key, v = split(self.query(y)), split(self.key(y)), split(self.value(y))
    if self.attention == 'sdpa':
      y = nn.functional.scaled_dot_product_attention(q, key, v)
    else:
      weights = torch.softmax(q @ key.transpose(-1, -2) / math.sqrt(k), dim=-1)
      y = weights @ v
    y = y.transpose(1, 2).reshape(b, t, d)
    x = x + self.out(y)
    y = self.mlp_out(nn.functional.gelu(self.mlp_in(self.ln_mlp(x)),
                                        approximate='tanh'))
    return x + y


class EncoderClassifier(nn.Module):
  """Learned positions, pre-LN blocks, mean pooling."""

  def __init__(self, seq_len: int, n_features: int, d_model: int,
               num_heads: int, num_layers: int, mlp_dim: int,
               num_classes: int, attention: str = 'softmax'):
    super().__init__()
    if attention not in ATTENTION_NAMES:
      raise ValueError(f'attention={attention!r}; valid: '
                       f"{', '.join(ATTENTION_NAMES)}.")
    self.embed = nn.Linear(n_features, d_model)
    self.pos_embedding = nn.Parameter(torch.randn(1, seq_len, d_model))
    self.blocks = nn.ModuleList(
        [_Block(d_model, num_heads, mlp_dim, attention)
         for _ in range(num_layers)])
    self.ln_final = nn.LayerNorm(d_model)
    self.head = nn.Linear(d_model, num_classes)

  def forward(self, x):
    x = self.embed(x) + self.pos_embedding[:, :x.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln_final(x).mean(dim=1))


def make_train_step(model: nn.Module, learning_rate: float):
  """One Adam step on the batch's mean cross-entropy; returns the loss."""
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  loss_fn = nn.CrossEntropyLoss()

  def step(inputs, labels):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss

  return step
