"""Pure domain of reporting: orders, results, report status and codes, SMART scopes. No infrastructure here."""
