"""Messages carry the stored state byte for byte: personal data travels (and dead-letters) sealed."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from application.consultations import ConsultationsApplication
from application.personal_data import mapper_factory, open_subject_keys
from application.settings import Settings
from infrastructure.messaging.codec import decode, encode
from process_managers.booking import BookingProcessManager

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
REASON = "Ibex-reason-4410"


def test_a_request_travels_sealed_opens_for_a_follower_and_reads_erased_after_erasure():
    # given: a leader and a follower sharing one key store, as the composition roots build them
    keys = open_subject_keys(Settings(persistence="memory"))
    leader = ConsultationsApplication(env=POPO, mapper_factory=mapper_factory(keys))
    follower = BookingProcessManager(env=POPO, mapper_factory=mapper_factory(keys))
    patient_id = uuid4()
    leader.request_consultation(patient_id, uuid4(), datetime(2027, 1, 5, 9, tzinfo=UTC), REASON)
    notification = leader.recorder.select_notifications(0, 1)[0]
    # when
    message = encode("Consultations", leader.mapper, notification)
    # then
    assert message.body == notification.state and REASON.encode() not in message.body
    assert REASON not in repr(message.properties.headers)
    assert decode(follower.mapper, message.body, message.properties)[0].reason == REASON
    keys.erase(str(patient_id))
    assert decode(follower.mapper, message.body, message.properties)[0].reason == "[erased]"
