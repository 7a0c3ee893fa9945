"""Pipeline definitions, installed as flywheel.pipelines."""
