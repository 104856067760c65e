"""PyTorch twins of the models of models/ that came after the seed models:
one definition each, shared by bench/pytorch_train.py (accuracy) and
bench/torch_bench.py (speed). Each class names the .nn file it mirrors; the
parameter counts are checked against nnc's (PARAMS) when a model is built.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

# nnc's parameter counts (`nnc check models/NAME.nn`, the total row).
PARAMS = {
    "vit": 139018,
    "lstm": 82186,
    "autoencoder": 9569,
    "denoise": 19105,
}


class Attention(nn.Module):
    """block attention(t, d, h) of models/vit.nn: multi-head self-attention."""

    def __init__(self, t, d, h):
        super().__init__()
        self.t, self.d, self.h = t, d, h
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        n = x.shape[0]
        qkv = self.qkv(x).reshape(n, self.t, 3, self.h, self.d // self.h).permute(0, 2, 3, 1, 4)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        a = (q @ k.transpose(-2, -1)) * (self.d // self.h) ** -0.5
        y = a.softmax(-1) @ v
        return self.proj(y.permute(0, 2, 1, 3).reshape(n, self.t, self.d))


class Encoder(nn.Module):
    """block encoder(t, d, h) of models/vit.nn: pre-norm transformer layer."""

    def __init__(self, t, d, h):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(t, d, h)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """models/vit.nn: 7x7 patches of a 28x28 image as 16 tokens of width 64,
    a class token, learned position embedding, 4 encoder layers of 4 heads."""

    def __init__(self, d=64, heads=4, depth=4):
        super().__init__()
        t = 17
        self.patch = nn.Conv2d(1, d, 7, stride=7)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, t, d) * 0.02)
        self.layers = nn.Sequential(*[Encoder(t, d, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)                     # [N, 16, d]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], 1) + self.pos
        return self.head(self.ln(self.layers(x))[:, 0])


class LSTM(nn.Module):
    """models/lstm.nn: the image's 28 rows as a sequence, lstm(128), the last
    state to linear(10)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x.reshape(x.shape[0], 28, 28))
        return self.head(h[0])


class AutoEncoder(nn.Module):
    """models/autoencoder.nn: strided convolutions down to 32x7x7, transposed
    convolutions back up; trained with MSE against its input."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.dec(self.enc(x))


class Denoise(nn.Module):
    """models/denoise.nn: a denoising autoencoder whose decoder upsamples
    (nearest) and convolves; trained on noisy inputs against the clean ones."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(32, 32, 3, padding=1),
                                 nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(32, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.dec(self.enc(x))


CLASSES = {"vit": ViT, "lstm": LSTM, "autoencoder": AutoEncoder, "denoise": Denoise}


def build(name):
    model = CLASSES[name]()
    n = sum(p.numel() for p in model.parameters())
    if n != PARAMS[name]:
        raise SystemExit(f"torch_models: {name} has {n} parameters, nnc's model has {PARAMS[name]}")
    return model
