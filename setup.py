from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


setup(
    name='skipconv_det',
    version='0.1.0',
    description='SkipConv (Singh & Namboodiri, IJCNN 2020) for MMDetection: '
    'convolutions computed on a structured lattice of output positions',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.11,<3.12',
    install_requires=[
        'torch==2.14.1',
        'torchvision==0.29.1',
        'mmengine==0.10.7',
        # Built from source with ops by tools/install_mmcv.sh (no wheel for torch 2.14 on PyPI).
        'mmcv==2.1.0',
        'mmdet==3.3.0',
        'mmpretrain==1.2.0',
        'pycocotools',
        'numpy',
        # mmengine resolves `mmdet::`/`mmpretrain::` config paths with pkg_resources, which setuptools 81
        # removed; torch 2.14 needs setuptools >= 77.0.3.
        'setuptools>=77.0.3,<81',
    ],
    extras_require={'tests': ['pytest', 'hypothesis']},
    license='Apache License 2.0',
)
