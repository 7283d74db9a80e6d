"""Delivery on every commit: the GitLab CI flow, the webhook receiver, its queue and the merge-request report."""
