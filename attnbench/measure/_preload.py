"""Imported once by the fork server of :class:`attnbench.runner.CellRunner`, so that forked cells start warm.

Nothing here may initialise CUDA, not even ``torch.cuda.is_available()`` (``cuInit`` does not survive ``fork``):
``torch.utils.benchmark`` (whose import probes CUDA) is imported by each cell, and ``CellRunner`` starts the server
with ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that a probe anyway goes through NVML. ``test_cell.py`` checks this.
"""
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*")
    import torch  # noqa: F401

    import attnbench.cell  # noqa: F401
    import attnbench.measure.flops  # noqa: F401
    import attnbench.measure.latency  # noqa: F401
    import attnbench.measure.memory  # noqa: F401
    import attnbench.measure.step  # noqa: F401
    import attnbench.skeletons  # noqa: F401

    try:
        import timm.models.vision_transformer  # noqa: F401

        from attnbench.registry import list_attentions

        list_attentions()  # imports soft/ and baselines/ and registers them
    except ImportError:  # a cell that needs them reports the error itself
        pass
