"""Processing: from Kafka offset ranges to indexed, flagged readings and dead letters."""
