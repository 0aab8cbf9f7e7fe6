import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run tiny tensors, where intra-op threads cost more than they save (10x on a busy
    2-core machine). Restored afterwards, so other test folders keep their setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
