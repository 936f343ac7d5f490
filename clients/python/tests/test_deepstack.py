"""The DeepStack-compatible calls, with the face photos of visionq's fixtures."""

from __future__ import annotations

import uuid
from pathlib import Path

from imagegen import png
from visionq_client import Client, FaceMatch, FacePrediction, Registration


def test_faces_detect_register_recognize_match_delete(client: Client, face_task: str,
                                                      faces: Path) -> None:
    found = client.detect_faces(faces / "obama.jpg")
    assert len(found) == 1 and isinstance(found[0], FacePrediction)
    assert found[0].x_max > found[0].x_min and found[0].confidence > 0
    assert client.detect_faces(png(40, 40)) == []

    userid = f"client-test-{uuid.uuid4().hex[:8]}"
    try:
        registered = client.register(userid, faces / "obama.jpg", faces / "obama2.jpg")
        assert registered == Registration(userid=userid, message="face added", encodings=2,
                                          skipped=0)
        assert client.register(userid, faces / "obama3.jpg", append=True).encodings == 3
        assert userid in client.list_faces()
        [match] = client.recognize(faces / "obama3.jpg")
        assert isinstance(match, FaceMatch) and match.userid == userid
        assert match.confidence >= 0.67
        assert client.recognize(faces / "biden.jpg")[0].userid != userid
    finally:
        assert client.delete_face(userid) is True
    assert userid not in client.list_faces()
    assert client.delete_face(userid) is False

    same = client.match_faces(faces / "obama.jpg", faces / "obama2.jpg")
    other = client.match_faces(faces / "obama.jpg", faces / "biden.jpg")
    assert same is not None and other is not None and same > other
    assert client.match_faces(faces / "obama.jpg", png(40, 40)) is None
