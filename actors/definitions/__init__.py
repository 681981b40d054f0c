"""Workflow definitions: parsing, validation, durations, expressions, templating.

``parse_workflow`` turns a raw mapping (from YAML or ``sdk.builder``) into the validated
``events.definition.WorkflowDefinition``; ``load_workflow_file``/``load_workflow_text`` read YAML.
Expressions and templates are evaluated against an ``ExpressionContext`` when jobs are decided.
"""

from actors.definitions.durations import format_duration, parse_duration
from actors.definitions.expressions import (
    ExpressionContext,
    ExpressionError,
    check_expression,
    evaluate,
    evaluate_condition,
    referenced_jobs,
    referenced_paths,
    uses_status_function,
)
from actors.definitions.templating import (
    check_template,
    render,
    template_expressions,
    template_paths,
    template_references,
)
from actors.definitions.validate import parse_workflow, validate_inputs
from actors.definitions.yaml_file import load_workflow_file, load_workflow_text

__all__ = [
    "ExpressionContext",
    "ExpressionError",
    "check_expression",
    "check_template",
    "evaluate",
    "evaluate_condition",
    "format_duration",
    "load_workflow_file",
    "load_workflow_text",
    "parse_duration",
    "parse_workflow",
    "referenced_jobs",
    "referenced_paths",
    "render",
    "template_expressions",
    "template_paths",
    "template_references",
    "uses_status_function",
    "validate_inputs",
]
