"""Kafka's default partitioner for keyed records, written independently of any client."""


def kafka_murmur2(key: bytes) -> int:
    """Kafka's murmur2 hash (Utils.murmur2), as the signed 32-bit int Java returns."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    whole = len(key) - len(key) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java producer picks for a keyed record."""
    return (kafka_murmur2(key) & 0x7FFFFFFF) % partitions
