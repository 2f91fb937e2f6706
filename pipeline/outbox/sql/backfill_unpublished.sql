-- Snapshot events still waiting in the outbox (the relay deletes each one once Kafka has it).
SELECT count(*) FROM {outbox} WHERE event_type = %(event_type)s
