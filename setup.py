from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version():
    namespace = {}
    with open('skipconv_det/version.py', encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='skipconv_det',
    version=get_version(),
    description='SkipConv (Singh & Namboodiri, IJCNN 2020) for MMDetection: '
    'convolutions computed on a structured lattice of output positions',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    # SkipConv's CPU kernels, built on first use (skipconv_det/ops/_extension.py).
    package_data={'skipconv_det.ops': ['csrc/*.cpp', 'csrc/*.h'], 'skipconv_det.inference': ['csrc/*.cpp']},
    # The Python that `make install` and CI test; 3.9 and 3.10 were never tested (README, "Install").
    python_requires='>=3.11',
    # The ranges the OpenMMLab 3.x stack supports; requirements/tested.txt pins the stack `make install` tests.
    install_requires=[
        # torch.load's safe loader, for which skipconv_det allowlists mmengine's checkpoint contents.
        'torch>=2.6',
        'mmengine>=0.7.1,<1.0.0',
        'mmcv>=2.0.0,<2.2.0',
        'mmdet>=3.0.0,<3.4.0',
        'numpy>=2',  # the allowlist names numpy 2's module paths (numpy._core)
        'Pillow',
        'pycocotools',
        # mmengine resolves `mmdet::`/`mmpretrain::` config paths with pkg_resources, which setuptools 81 removed.
        'setuptools<81',
    ],
    extras_require={
        'mmpretrain': ['mmpretrain>=1.0.0,<2.0.0'],
        # ONNX export (tools/export_onnx.py, the benchmarks' --runtime onnxruntime).
        'onnx': ['onnx', 'onnxscript', 'onnxruntime'],
        'tests': ['pytest', 'pytest-xdist', 'hypothesis', 'onnx', 'onnxscript', 'onnxruntime'],
    },
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
    ],
    license='Apache License 2.0',
)
