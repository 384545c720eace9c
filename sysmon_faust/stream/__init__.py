"""The worker on Kafka: the Faust app, topics and tables, the intake, the join agent, state I/O."""
