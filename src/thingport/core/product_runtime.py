"""What the hot path needs of a product, compiled once per product version: a pure value (the registry cache
builds it, the ingest use case and the dialects' rules read it)."""

from dataclasses import dataclass, field

from thingport.core.model import Product
from thingport.core.thingmodel import ThingModel
from thingport.core.topics import Topic, classify_topic

_TOPIC_MEMO_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ProductRuntime:
    """What the hot path needs of a product: its compiled model and its validation mode."""

    product: Product
    model: ThingModel
    categories: dict[str, str]  # declared custom topics: suffix -> pub|sub|all
    topics: dict[tuple[str, str], Topic] = field(default_factory=dict)  # (deviceName, topic) -> allowed

    @property
    def whole_report(self) -> bool:
        return self.product.validation == "whole-report"

    def classify(self, device_name: str, topic: str) -> Topic:
        """The kind of a topic this product's device may publish to (TopicDenied if not), memoized: devices
        post to the same few topics again and again. The memo lives as long as this product version."""
        key = (device_name, topic)
        found = self.topics.get(key)
        if found is None:
            found = classify_topic(topic, self.product.product_key, device_name, self.categories)
            if len(self.topics) >= _TOPIC_MEMO_MAX:
                self.topics.clear()
            self.topics[key] = found
        return found
