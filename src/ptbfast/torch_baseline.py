"""The same model and training step in PyTorch, only for speed comparisons (torch is optional).

Layout differs from TF (nn.LSTM's gate order) but the arithmetic per word is the same: embedding,
dropout, stacked LSTM, linear + softmax cross-entropy, TF's cost (sum over steps of the batch
mean), global-norm clipping and plain SGD. ``config.precision == "bf16"`` runs the forward pass
under ``torch.autocast("cpu", dtype=torch.bfloat16)``, PyTorch's one-line bf16.

Written as a careful PyTorch user would, so that every ratio ptbfast reports is against PyTorch at
its best: nn.LSTM's second bias (``bias_hh``, which TF's cell does not have) is zero and frozen, so
no gradient is computed for it; gradients are released, not zero-filled, between steps
(``zero_grad(set_to_none=True)``); clipping and the update run on all tensors at once (``foreach``);
evaluation runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

import numpy as np


def make_torch_trainer(config, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    V, H, L = config.vocab_size, config.hidden_size, config.num_layers

    class PTBModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, H)
            self.drop = nn.Dropout(1 - config.keep_prob)
            self.lstm = nn.LSTM(H, H, L, dropout=1 - config.keep_prob if L > 1 else 0.0)
            self.softmax = nn.Linear(H, V)
            for p in self.parameters():
                nn.init.uniform_(p, -config.init_scale, config.init_scale)
            for layer in range(L):  # TF's BasicLSTMCell has one bias: nn.LSTM's second stays 0, untrained
                bias_hh = getattr(self.lstm, f"bias_hh_l{layer}")
                nn.init.zeros_(bias_hh)
                bias_hh.requires_grad_(False)
            if config.tie_weights:  # both are [V, H]: the output projection is the embedding
                self.softmax.weight = self.embedding.weight

        def forward(self, x, state):
            out, state = self.lstm(self.drop(self.embedding(x)), state)
            return self.softmax(self.drop(out)).view(-1, V), state

    model = PTBModel()
    trained = [p for p in model.parameters() if p.requires_grad]
    loss_fn = nn.CrossEntropyLoss()
    bf16 = config.precision == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def zero_state(batch):
        return (torch.zeros(L, batch, H), torch.zeros(L, batch, H))

    def train_step(x, y, state, lr=1.0):
        """x, y: int arrays [B, T] as TF gives them; returns (cost, state)."""
        model.train()
        xt = torch.from_numpy(np.ascontiguousarray(x.T)).long()
        yt = torch.from_numpy(np.ascontiguousarray(y.T)).long().reshape(-1)
        state = tuple(s.detach() for s in state)
        with autocast():
            logits, state = model(xt, state)
        cost = loss_fn(logits.float(), yt) * x.shape[1]
        model.zero_grad(set_to_none=True)
        cost.backward()
        nn.utils.clip_grad_norm_(trained, config.max_grad_norm, foreach=True)
        with torch.no_grad():
            torch._foreach_add_(trained, [p.grad for p in trained], alpha=-lr)
        return float(cost.detach()), state

    def eval_step(x, y, state):
        model.eval()
        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x.T)).long()
            yt = torch.from_numpy(np.ascontiguousarray(y.T)).long().reshape(-1)
            with autocast():
                logits, state = model(xt, state)
            return float(loss_fn(logits.float(), yt)) * x.shape[1], state

    return train_step, eval_step, zero_state
