"""Simulated shops with ground truth, and real datasets (CDNOW).

- :mod:`~affinity_sdk.sim.shop`: :func:`simulate_shop` (the process it simulates) and :class:`ShopSimulation`;
- :mod:`~affinity_sdk.sim.parameters`: the process's shared parameters;
- :mod:`~affinity_sdk.sim.catalogue`, :mod:`~affinity_sdk.sim.customers`, :mod:`~affinity_sdk.sim.weeks`:
  the products, the customers' latent state and the week-by-week simulation;
- :mod:`~affinity_sdk.sim.event_generation`, :mod:`~affinity_sdk.sim.assembly`, :mod:`~affinity_sdk.sim.ids`:
  the events, merged into time-sorted batches, and their ids;
- :mod:`~affinity_sdk.sim.truth`: :class:`CustomerTruth`, the planted state and true outcome probabilities;
- :mod:`~affinity_sdk.sim.export`: simulated batches back as typed events and Arrow tables;
- :mod:`~affinity_sdk.sim.cdnow`: :func:`cdnow_orders`, the CDNOW purchase log as a batch.
"""

from affinity_sdk.sim.assembly import EventDetails
from affinity_sdk.sim.catalogue import Catalogue
from affinity_sdk.sim.cdnow import cdnow_orders
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop
from affinity_sdk.sim.truth import CustomerTruth

__all__ = ["Catalogue", "CustomerTruth", "EventDetails", "ShopSimulation", "cdnow_orders", "simulate_shop"]
