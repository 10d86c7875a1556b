"""Bulk API 1.0's documents: jobInfo, batchInfo and result lists in XML or JSON, errors, and query
results as JSON or XML records (pure: values in, bytes out)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

import orjson

from crmsync.emulator.clock import parse_datetime
from crmsync.emulator.schema import find_object

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_TYPE = "application/xml"
JSON_TYPE = "application/json"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return escape(str(value))


def _elements(values: dict[str, Any]) -> str:
    return "".join(f"<{k}>{_text(v)}</{k}>" for k, v in values.items() if v is not None)


def document(root: str, values: dict[str, Any]) -> bytes:
    """Returns `<root xmlns=…>` with one element per value (None left out)."""
    return f'{_HEAD}<{root} xmlns="{NS}">{_elements(values)}</{root}>'.encode()


def batch_list(batches: Iterable[dict[str, Any]]) -> bytes:
    items = "".join(f"<batchInfo>{_elements(b)}</batchInfo>" for b in batches)
    return f'{_HEAD}<batchInfoList xmlns="{NS}">{items}</batchInfoList>'.encode()


def result_list(result_ids: Iterable[str]) -> bytes:
    items = "".join(f"<result>{r}</result>" for r in result_ids)
    return f'{_HEAD}<result-list xmlns="{NS}">{items}</result-list>'.encode()


def error(code: str, message: str, *, as_json: bool) -> tuple[bytes, str]:
    """Returns (body, content type) of a Bulk API error."""
    if as_json:
        return orjson.dumps({"exceptionCode": code, "exceptionMessage": message}), JSON_TYPE
    return document("error", {"exceptionCode": code, "exceptionMessage": message}), XML_TYPE


def read_job_request(body: bytes, *, as_json: bool) -> dict[str, str]:
    """Returns the fields of a jobInfo request (create, close, abort) as text, names without namespace."""
    if as_json:
        data = orjson.loads(body) if body else {}
        if not isinstance(data, dict):
            raise ValueError("Expected a JSON object")
        return {str(k): str(v) for k, v in data.items()}
    root = ET.fromstring(body)
    return {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in root}


def _epoch_ms(value: str, kind: str) -> int:
    return parse_datetime(value if kind == "datetime" else value + "T00:00:00Z")


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """Returns a REST-shaped record as Bulk API 1.0 JSON has it: dates and date-times in epoch ms."""
    obj = find_object(record["attributes"]["type"])
    out: dict[str, Any] = {}
    for key, value in record.items():
        f = obj.field(key) if obj is not None and key != "attributes" else None
        if isinstance(value, dict) and key != "attributes" and "attributes" in value:
            out[key] = json_record(value)
        elif f is not None and f.type in ("datetime", "date") and value is not None:
            out[key] = _epoch_ms(value, f.type)
        else:
            out[key] = value
    return out


def _xml_record(record: dict[str, Any], tag: str) -> str:
    parts = [f"<type>{escape(record['attributes']['type'])}</type>"]
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "attributes" in value:
            parts.append(_xml_record(value, key))
        elif value is None:
            parts.append(f'<{key} xsi:nil="true"/>')
        else:
            parts.append(f"<{key}>{_text(value)}</{key}>")
    return f'<{tag} xsi:type="sObject">{"".join(parts)}</{tag}>'


def xml_records(records: Iterable[dict[str, Any]]) -> bytes:
    """Returns REST-shaped records as a Bulk API 1.0 XML queryResult."""
    body = "".join(_xml_record(r, "records") for r in records)
    return f'{_HEAD}<queryResult xmlns="{NS}" xmlns:xsi="{XSI}">{body}</queryResult>'.encode()
