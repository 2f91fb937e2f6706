-- Drop dead-lettered events for good; their aggregate is no longer parked.
DELETE FROM {schema}.outbox_dead_letter WHERE {where}
