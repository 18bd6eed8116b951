"""What each variant ``qskew mitigate`` adds stands for, next to the plain variants it is compared with.

``qskew mitigate``'s before/after table and the report's mitigation section both list variants by
this: it sits below both, so that the report never imports the mitigate stage.
"""

# Role of each variant in the comparison, in the order the table lists them.
ROLES = {
    "int8": "before: int8 (PTQ)",
    "int8-qat": "after: int8 (QAT)",
    "int8-balanced-calib": "int8, balanced calibration",
    "int8-random-calib": "int8, random calibration",
    "mixed": "before: mixed (PTQ)",
    "mixed-qat": "after: mixed (QAT)",
    "fp32-qat": "QAT weights in float",
}
