"""GitLab delivery: the REST API client (:mod:`.api`) and the merge-request report (:mod:`.report`)."""
