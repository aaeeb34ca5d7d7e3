"""The same model and training step in PyTorch, only for speed comparisons (torch is optional).

Layout differs from TF (nn.LSTM's gate order and two biases) but the arithmetic per word is the
same: embedding, dropout, stacked LSTM, linear + softmax cross-entropy, TF's cost (sum over steps
of the batch mean), global-norm clipping and plain SGD. ``config.precision == "bf16"`` runs the
forward pass under ``torch.autocast("cpu", dtype=torch.bfloat16)``, PyTorch's one-line bf16.
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
            if config.tie_weights:  # both are [V, H]: the output projection is the embedding
                self.softmax.weight = self.embedding.weight

        def forward(self, x, state):
            out, state = self.lstm(self.drop(self.embedding(x)), state)
            return self.softmax(self.drop(out)).view(-1, V), state

    model = PTBModel()
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
        model.zero_grad(set_to_none=False)
        cost.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        return float(cost.detach()), state

    def eval_step(x, y, state):
        model.eval()
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x.T)).long()
            yt = torch.from_numpy(np.ascontiguousarray(y.T)).long().reshape(-1)
            with autocast():
                logits, state = model(xt, state)
            return float(loss_fn(logits.float(), yt)) * x.shape[1], state

    return train_step, eval_step, zero_state
