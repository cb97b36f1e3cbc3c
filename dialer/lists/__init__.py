"""Who may be called, when and how often: campaigns, contacts, the do-not-call list, compliance
(calling windows, attempt limits), the hopper that leases the next contact, outcome statistics and
the end-of-run report. Reads and writes the store; knows nothing of telephony or the floor."""
