"""Label sets shared by the API (option validation) and the models (their outputs)."""

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
"""The 80 COCO labels the detect models report (same order as their class ids)."""

COCO_CATEGORY_GAPS = {12: "street sign", 26: "hat", 29: "shoe", 30: "eye glasses", 45: "plate",
                      66: "mirror", 68: "window", 69: "desk", 71: "door", 83: "blender"}
"""The COCO category ids (1..90) with no annotations: the 2014 paper's names."""


def _coco91() -> tuple[str, ...]:
    names, labels = ["background"], iter(COCO_LABELS)
    for category_id in range(1, 91):
        names.append(COCO_CATEGORY_GAPS.get(category_id) or next(labels))
    return tuple(names)


COCO91_LABELS = _coco91()
"""Indexed by COCO category id (0 background, 1 person ... 90 toothbrush): the class ids
of detectors that keep COCO's ids (RT-DETR and D-FINE exports, RF-DETR, TF Object
Detection API)."""

COCO_SYNONYMS = {
    "motorbike": "motorcycle", "aeroplane": "airplane", "tvmonitor": "tv",
    "tv monitor": "tv", "television": "tv", "sofa": "couch", "pottedplant": "potted plant",
    "diningtable": "dining table", "hair dryer": "hair drier", "hairdrier": "hair drier",
    "cellphone": "cell phone", "mobile phone": "cell phone", "hand bag": "handbag",
    "sportsball": "sports ball",
    "firehydrant": "fire hydrant", "stopsign": "stop sign", "trafficlight": "traffic light",
    "parkingmeter": "parking meter", "teddybear": "teddy bear", "wineglass": "wine glass",
    "hotdog": "hot dog", "doughnut": "donut", "bike": "bicycle", "plane": "airplane",
    "laptop computer": "laptop", "computer mouse": "mouse", "pedestrian": "person",
}
"""Other spellings of COCO classes in detectors' label files (darknet's coco.names and
Pascal VOC: ``motorbike``, ``aeroplane``, ``sofa``, ``tvmonitor``, ...) -> the name
``COCO_LABELS`` (and Frigate's labelmap) uses."""


def coco_name(label: str) -> str:
    """A detector's label as COCO / Frigate spell it (``motorbike`` -> ``motorcycle``,
    ``dining_table`` -> ``dining table``); a label that is not a COCO class comes back as
    given."""
    key = " ".join(label.replace("_", " ").replace("-", " ").lower().split())
    if key in _COCO_SET:
        return key
    return COCO_SYNONYMS.get(key) or COCO_SYNONYMS.get(key.replace(" ", "")) or label


_COCO_SET = frozenset(COCO_LABELS)
