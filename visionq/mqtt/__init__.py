"""MQTT for Home Assistant and friends: every finished job, every recognised person and
each queue's backlog, published by a role of its own (``python -m visionq.mqtt``, started
by ``visionq up`` when ``VISIONQ_MQTT_URL`` is set).

- ``settings``: ``VISIONQ_MQTT_*``.
- ``topics``: topic names, and the sanitising of what goes into them (userids, tasks).
- ``payloads``: the JSON published, bounded in size, face encodings never included.
- ``discovery``: Home Assistant MQTT discovery configs (a "last seen" sensor per enrolled
  person, a backlog sensor per queue).
- ``publisher``: the loop: reads the job history stream ``visionq:history`` through a
  consumer group of its own and acknowledges an entry only once the broker acknowledged
  (PUBACK, QoS 1) everything it published for it.
"""
