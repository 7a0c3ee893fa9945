"""flywheel: ML pipelines that run on one machine and compile to Kubeflow Pipelines v2."""

from setuptools import find_packages, setup

setup(
    name="flywheel-ml",
    version="0.1.0",
    description="ML pipeline platform: typed components, local runner with ML Metadata, Kubeflow compile",
    python_requires=">=3.11,<3.12",
    # components/ and pipelines/ live at the top of the repository but install as
    # flywheel.components and flywheel.pipelines, so nothing generic lands in site-packages.
    # Subpackages are found, not listed: components/ is packages by job (components/validate/, ...).
    packages=[
        "flywheel",
        *(f"flywheel.{name}" for name in find_packages("flywheel")),
        "flywheel.components",
        *(f"flywheel.components.{name}" for name in find_packages("components")),
        "flywheel.pipelines",
    ],
    package_dir={
        "flywheel.components": "components",
        "flywheel.pipelines": "pipelines",
    },
    include_package_data=True,
    # The dashboard serves its own templates and static files (no CDN), so they ship in the wheel.
    package_data={"flywheel.dashboard": ["templates/*.html", "static/*"]},
    # Dependencies are pinned in requirements.lock and installed from it with --no-deps;
    # listing them here too would let pip resolve (and backtrack) on its own.
    install_requires=[],
    entry_points={"console_scripts": ["flywheel=flywheel.cli.main:main"]},
)
