"""One-level Haar (DB1) DWT as a fixed stride-2 grouped convolution: exportable, no Python loops over pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# 2x2 analysis filters in (row, col) order; conv2d correlates, so they are used as written.
# Names follow pywt.dwt2: cA = LL, cH = LH (low along columns, high along rows: horizontal edges),
# cV = HL (vertical edges), cD = HH.
_HAAR = torch.tensor(
    [
        [[1.0, 1.0], [1.0, 1.0]],  # LL
        [[1.0, 1.0], [-1.0, -1.0]],  # LH (= pywt cH)
        [[1.0, -1.0], [1.0, -1.0]],  # HL (= pywt cV)
        [[1.0, -1.0], [-1.0, 1.0]],  # HH (= pywt cD)
    ]
) / 2.0


def haar_filters(channels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(4*channels, 1, 2, 2) weights for a grouped conv: output channel 4*c + k is band k of input channel c."""
    return _HAAR.to(dtype).repeat(channels, 1, 1).unsqueeze(1)


def haar_dwt_packed(x: Tensor, filters: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, 4, H/2, W/2), bands in order LL, LH, HL, HH."""
    n, c = x.shape[0], x.shape[1]
    y = F.conv2d(x, filters, stride=2, groups=c)
    return y.reshape(n, c, 4, y.shape[-2], y.shape[-1])


def haar_dwt(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(ll, lh, hl, hh), each (N, C, H/2, W/2); equals pywt.dwt2(x, "db1") as (cA, (cH, cV, cD)) for even H, W."""
    bands = haar_dwt_packed(x, haar_filters(x.shape[1], x.dtype).to(x.device))
    return bands[:, :, 0], bands[:, :, 1], bands[:, :, 2], bands[:, :, 3]
