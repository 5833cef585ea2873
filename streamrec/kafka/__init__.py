"""Package data for the local Kafka broker: `pom.xml` (jar resolution) and `log4j2.xml` (broker logging)."""

__all__: list[str] = []
