"""Azure Table Storage state: one partition per account, one transaction per decision."""
