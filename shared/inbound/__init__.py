"""Outside text to facts, or a reason it cannot be one."""
