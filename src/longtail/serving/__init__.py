"""Serving a trained run over HTTP (``longtail serve``): the app in :mod:`.app`, upload checks in :mod:`.uploads`."""
